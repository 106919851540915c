#include "pkg08/l08_00.h"
#include "pkg08/l08_01.h"
#include "pkg08/l08_02.h"
#include "pkg08/l08_03.h"
#include "pkg08/l08_04.h"
#include "pkg08/l08_05.h"
#include "pkg08/l08_06.h"
#include "pkg08/l08_07.h"
#include "pkg08/l08_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l08_00::describe(argc) << "\n";
  std::cout << l08_01::describe(argc) << "\n";
  std::cout << l08_02::describe(argc) << "\n";
  std::cout << l08_03::describe(argc) << "\n";
  std::cout << l08_04::describe(argc) << "\n";
  std::cout << l08_05::describe(argc) << "\n";
  std::cout << l08_06::describe(argc) << "\n";
  std::cout << l08_07::describe(argc) << "\n";
  std::cout << l08_08::describe(argc) << "\n";
  return 0;
}
