#include "pkg04/l04_00.h"
#include "pkg04/l04_01.h"
#include "pkg04/l04_02.h"
#include "pkg04/l04_03.h"
#include "pkg04/l04_04.h"
#include "pkg04/l04_05.h"
#include "pkg04/l04_06.h"
#include "pkg04/l04_07.h"
#include "pkg04/l04_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l04_00::describe(argc) << "\n";
  std::cout << l04_01::describe(argc) << "\n";
  std::cout << l04_02::describe(argc) << "\n";
  std::cout << l04_03::describe(argc) << "\n";
  std::cout << l04_04::describe(argc) << "\n";
  std::cout << l04_05::describe(argc) << "\n";
  std::cout << l04_06::describe(argc) << "\n";
  std::cout << l04_07::describe(argc) << "\n";
  std::cout << l04_08::describe(argc) << "\n";
  return 0;
}
