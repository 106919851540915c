#include "pkg01/l01_00.h"
#include "pkg01/l01_01.h"
#include "pkg01/l01_02.h"
#include "pkg01/l01_03.h"
#include "pkg01/l01_04.h"
#include "pkg01/l01_05.h"
#include "pkg01/l01_06.h"
#include "pkg01/l01_07.h"
#include "pkg01/l01_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l01_00::describe(argc) << "\n";
  std::cout << l01_01::describe(argc) << "\n";
  std::cout << l01_02::describe(argc) << "\n";
  std::cout << l01_03::describe(argc) << "\n";
  std::cout << l01_04::describe(argc) << "\n";
  std::cout << l01_05::describe(argc) << "\n";
  std::cout << l01_06::describe(argc) << "\n";
  std::cout << l01_07::describe(argc) << "\n";
  std::cout << l01_08::describe(argc) << "\n";
  return 0;
}
