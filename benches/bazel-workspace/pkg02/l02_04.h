#ifndef PKG02_L02_04_H
#define PKG02_L02_04_H
#include <string>
#include <vector>

namespace l02_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l02_04

#endif
