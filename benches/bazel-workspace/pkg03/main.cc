#include "pkg03/l03_00.h"
#include "pkg03/l03_01.h"
#include "pkg03/l03_02.h"
#include "pkg03/l03_03.h"
#include "pkg03/l03_04.h"
#include "pkg03/l03_05.h"
#include "pkg03/l03_06.h"
#include "pkg03/l03_07.h"
#include "pkg03/l03_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l03_00::describe(argc) << "\n";
  std::cout << l03_01::describe(argc) << "\n";
  std::cout << l03_02::describe(argc) << "\n";
  std::cout << l03_03::describe(argc) << "\n";
  std::cout << l03_04::describe(argc) << "\n";
  std::cout << l03_05::describe(argc) << "\n";
  std::cout << l03_06::describe(argc) << "\n";
  std::cout << l03_07::describe(argc) << "\n";
  std::cout << l03_08::describe(argc) << "\n";
  return 0;
}
