#ifndef PKG03_L03_04_H
#define PKG03_L03_04_H
#include <string>
#include <vector>

namespace l03_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l03_04

#endif
